from rl_laof.flow.targets import main

main()
