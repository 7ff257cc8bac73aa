"""The `tunnelwatch` command line, on top of the same code the Functions app runs."""
