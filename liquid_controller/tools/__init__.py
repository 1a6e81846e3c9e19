"""Layer 7: thin commands composing the layers below (one module per subcommand)."""
