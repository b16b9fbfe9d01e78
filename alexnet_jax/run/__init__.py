"""What a run holds beyond the net: the towers' device mesh (§3.2), several processes,
dispatch, checkpoints and run.json."""
