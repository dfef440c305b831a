from xpcargo.cli import main

main()
