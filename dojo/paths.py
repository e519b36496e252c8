"""Where the repository's shipped files live, found from the package's own location."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
CONFIGS_DIR = REPO_ROOT / "configs"
CHAT_TEMPLATES_DIR = REPO_ROOT / "chat_templates"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

TINY_MODEL = MODELS_DIR / "dojo-tiny"
TINY_CHAT_MODEL = MODELS_DIR / "dojo-tiny-chat"
