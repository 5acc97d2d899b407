"""Built-in rules, one module per rule, registered through ``hub_register_rules`` like any plugin."""
