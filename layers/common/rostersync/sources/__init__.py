"""Source readers and clients: each turns what a SIS/MIS gives into canonical records."""
