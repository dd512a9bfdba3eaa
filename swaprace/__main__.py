from swaprace.cli import main

main()
