"""Analysis above the models: parameter and MAC counts (``complexity``), timing of every form of a model
(``benchmark``) and the reference implementations the backbones are compared with (``reference_models``).
Imported by the tools and tests, never by the models."""
