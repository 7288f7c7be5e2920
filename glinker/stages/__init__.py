"""Built-in pipeline stages, one module each. Modules import cheaply; heavy state loads in ``warm_up``."""
