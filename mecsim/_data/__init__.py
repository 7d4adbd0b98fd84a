"""Packaged data: the model/GPU profiles (``models/``) and the ready scenarios (``scenarios/``).

The two folders live at the top of the repository; ``models`` and ``scenarios`` here are symbolic
links to them, so a checkout (``PYTHONPATH``), an editable install and a wheel (where setuptools
copies the files in) all find them as package resources of ``mecsim._data`` through
:mod:`importlib.resources`, never through the checkout's path.
"""
