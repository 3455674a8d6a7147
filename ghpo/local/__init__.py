"""`ghpo run`: the whole system as local processes on one machine (the README's main-job command)."""
