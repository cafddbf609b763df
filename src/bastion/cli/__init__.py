"""The `bastion` command line. Only this package prints."""
