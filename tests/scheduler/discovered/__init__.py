"""An app whose ``tasks`` module declares a schedule: found by the registry's discovery."""
