"""The tools env (ToolRL protocol)."""
