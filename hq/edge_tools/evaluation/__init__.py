"""Offline evaluation (face accuracy, PAD error rates, DET plots): not for kiosks."""
