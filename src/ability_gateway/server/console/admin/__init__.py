"""The console's admin screens (``/console/admin``)."""
