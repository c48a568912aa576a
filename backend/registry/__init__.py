"""The registry (一库): towns, villages, growers, plots, operators and nurseries."""
