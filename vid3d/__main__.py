from vid3d.cli import main

main()
