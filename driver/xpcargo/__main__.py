from xpcargo.launch import main

main()
