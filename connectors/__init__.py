"""Built-in connectors, one subpackage per CRM, each written exactly like a third-party plugin."""
