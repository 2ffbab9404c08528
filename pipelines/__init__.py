"""The Beam job: options, thin transforms over ``stylefix_core``, the entry point."""
