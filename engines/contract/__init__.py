"""The wire contract: what servers and engine hosts both import (standard library only)."""
