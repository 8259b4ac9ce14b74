"""brevity: an example gymrl reward plugin. Shorter policy text scores higher."""

from gymrl import Reward, hookimpl


class BrevityReward(Reward):
    """1 for no policy text, falling linearly to 0 at ``budget`` characters. Range [0, 1]."""

    name = "brevity"
    range = (0.0, 1.0)

    def __init__(self, budget: int = 2000):
        self.budget = budget

    def score(self, episode):
        chars = sum(len(turn.text) for turn in episode.policy_turns)
        return max(0.0, 1.0 - chars / self.budget)


@hookimpl
def register_rewards(register):
    register("brevity", BrevityReward)
