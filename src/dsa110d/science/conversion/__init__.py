"""Converting one subband set into one Measurement Set: plan, phase, stream, write."""
