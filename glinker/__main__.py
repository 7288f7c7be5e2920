from glinker.cli import main

main()
