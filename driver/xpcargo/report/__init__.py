"""The build-script report: what every build script (or ``links`` override) of the last build gave Cargo, where each
library it linked came from, and the glibc each final artifact needs. ``model`` holds its values; ``collect`` builds
it from Cargo's messages (with ``origins`` and, for a failed build script, ``hints``); ``store`` keeps and loads it;
``render`` shows it."""
