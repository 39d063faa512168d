"""Flow-matching noise process and samplers."""
