"""The pure core: request flows, the policy ladder, state, rules, experiments. No I/O, no clock."""
