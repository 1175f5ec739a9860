"""Drive lnrr from Python tests: start `lnrr record` between two nodes, call its control socket
with pyln-client, read what it recorded."""
from .proxy import LnrrProxy, LnrrError, write_key

__all__ = ["LnrrProxy", "LnrrError", "write_key"]
