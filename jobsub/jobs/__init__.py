"""Jobs: specs and templates, records kept in the object store, log chunks, the service the CLI calls."""
