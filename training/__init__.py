"""Training the cascade: embeddings and their cache, heads, calibration, evaluation, runs.

No Streamlit here: long work reports progress through callbacks.
"""
