from ability_gateway.cli import main

main()
