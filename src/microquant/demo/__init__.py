"""Built-in demo: a NumPy-trained digits CNN taken through the whole pipeline."""

from microquant.demo.run import run_demo

__all__ = ["run_demo"]
