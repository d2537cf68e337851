from avsync.cli.main import main

main()
