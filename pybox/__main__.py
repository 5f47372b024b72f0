from pybox.cli import main

main()
