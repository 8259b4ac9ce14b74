"""The GRPO learner: rollouts through any env, group-relative advantages, clipped updates."""
