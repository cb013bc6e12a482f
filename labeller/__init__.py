"""skulab's Streamlit app: label, review, split, train and predict."""
