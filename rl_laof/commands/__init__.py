"""The commands: one module per command, each parsing its flags, making its stage's config, asking the
pipeline for the stage's inputs and calling the stage's library (docs/architecture.md, "Names").

    expert      train an expert on state              python -m rl_laof.expert      rl-laof-expert
    collect     a video dataset                       python -m rl_laof.collect     rl-laof-collect
    flow        a dataset's flow targets              python -m rl_laof.flow        rl-laof-flow
    lam         a latent action model                 python -m rl_laof.lam         rl-laof-lam
    imitation   a latent policy and action decoder    python -m rl_laof.imitation   rl-laof-imitation
    skills      SOF skills                            python -m rl_laof.skills      rl-laof-skills
    train       an agent in a latent action space     python -m rl_laof.train       rl-laof-train
    evaluate    replay a trained agent                python -m rl_laof.evaluate    rl-laof-evaluate
    inspect     a dataset's summary and contact sheet                               rl-laof-inspect
    multitask   merge single-task datasets of one embodiment                        rl-laof-multitask
    demo        what the agent sees: video, levels, backends                        rl-laof-demo

Each also runs as ``python -m rl_laof.commands.<name>``; its ``main_entry`` is the console script: ``main``
under :func:`rl_laof.cli.run` (bad input, a full disk and Ctrl-C as one line).
"""
