"""The methods: their registry, objectives, predictors and target branches."""
