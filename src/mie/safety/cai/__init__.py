"""Constitutional AI (Bai et al., 2022) on a causal LM of ours: the library half of ``recipe: cai``.

* :mod:`~mie.safety.cai.prompts`: the packaged red-team and helpful prompt sets (train and held-out);
* :mod:`~mie.safety.cai.critique`: SL-CAI, answer -> critique -> revision rounds, revisions chosen by
  the safety evaluator and refusal detection;
* :mod:`~mie.safety.cai.feedback`: RL-CAI, pairs of sampled answers labelled by a feedback model's
  multiple-choice log-probabilities, ensembled over principles;
* :mod:`~mie.safety.cai.measure`: harmful-answer rate, helpfulness, win rate and KL of a policy.

The training itself runs on ``BaseTrainer`` with the tasks of ``mie.training.tasks`` (SFT, reward
model, DPO, PPO); ``mie.recipes.cai`` wires it all from a config.
"""
