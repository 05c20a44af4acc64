"""Kernel placeholder: being written."""
