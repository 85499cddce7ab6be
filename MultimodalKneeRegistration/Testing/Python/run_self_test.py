"""Run the module's in-Slicer self-test without a screen and exit with its status (0: passed).

``--no-main-window`` still starts a Qt GUI application, which on Linux needs a display: give it a
virtual one with ``xvfb-run`` (package ``xvfb``), or Qt's offscreen platform:

xvfb-run -a Slicer --no-splash --no-main-window --testing \\
    --additional-module-paths <repo>/MultimodalKneeRegistration \\
    --python-script <repo>/MultimodalKneeRegistration/Testing/Python/run_self_test.py

QT_QPA_PLATFORM=offscreen Slicer --no-splash --no-main-window --testing ...   (same arguments)

The test (MultimodalKneeRegistrationTest) downloads Slicer's CTMRBrain and CBCTMRHead samples
through the SampleData module (SHA256-checked), registers them with every engine this Slicer has
(SimpleITK, and BRAINSFit when its CLI module is loaded) and checks the numbers.
"""

import sys
import unittest

import slicer

try:
    import MultimodalKneeRegistration
except ImportError as error:
    print(f"Cannot import the module ({error}).")
    print("Pass --additional-module-paths <repo>/MultimodalKneeRegistration to Slicer.")
    slicer.util.exit(2)
else:
    suite = unittest.TestSuite([MultimodalKneeRegistration.MultimodalKneeRegistrationTest("runTest")])
    outcome = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    slicer.util.exit(0 if outcome.wasSuccessful() else 1)
