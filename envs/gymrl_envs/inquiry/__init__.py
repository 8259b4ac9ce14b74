"""The inquiry env (Nous): ask what the user wants, rewarded by exact information gain."""
