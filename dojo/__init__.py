"""LLM Dojo: the reusable pieces of the fine-tuning course, and its training script.

Each chapter's code lives in the module named after its idea (`dojo.chat`, `dojo.data`,
`dojo.models`, `dojo.adapters`, `dojo.losses`, `dojo.rewards`, `dojo.train`, `dojo.eval`,
`dojo.infer`, `dojo.viz`); import them directly. This top level only resolves the profile.
"""

from dojo.profiles import Profile, profile

__version__ = "0.1.0"
__all__ = ["Profile", "profile", "__version__"]
