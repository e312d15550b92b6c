"""Anonymization methods (installed as anonbench.methods). Built-ins are declared lazily in
anonbench.registry; each module registers its classes with @register_method."""
