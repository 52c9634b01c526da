"""The policy that guards children's data, as pure functions over typed inputs: which
records are in scope, which archives are refused, which hold thresholds a run trips and
what a hold keeps back, and the field rules a change goes through. The pipeline steps
only load, call and store."""
