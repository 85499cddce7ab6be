"""Generated data with a known answer: the knee phantom and the one-command demo."""
