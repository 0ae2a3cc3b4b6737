"""One access model for every service: the policy (pure), its projection, its HTTP guard."""
