"""Anonymization methods (installed as anonbench.methods). Built-ins are declared once, in
anonbench.registry.BUILTINS (name, "module:Class", fixed parameters); their modules do not
register themselves."""
