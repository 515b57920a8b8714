from jobctl.cli.main import main

main()
