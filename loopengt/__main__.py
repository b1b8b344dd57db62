from loopengt.cli.app import main

main()
