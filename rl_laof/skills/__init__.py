"""SOF skills (Fang et al. 2025, on QueST's skill learner): the stage library behind ``python -m rl_laof.skills``.

    config       SkillsConfig and its presets
    data         agent-flow windows of a (multi-task) dataset (ChunkData), the agent-weighted flow loss
    training     a skills run folder and its stages: tokenizer, prior, translator (SkillRun); load_skills
    policy       SkillPolicy: prior -> tokens -> translator -> an H-step action chunk, then replan
    evaluation   held-out token quality and per-task returns (evaluate_skills), report.json
"""
