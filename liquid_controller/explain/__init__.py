"""Layer 6: explanation of a policy: a trace of the Controller over a bag or a simulator run (through the
node's frame assembler and settings), neuron activity, decision trees, attention measures, plots and the
HTML report. The saliency maps themselves (VisualBackProp, SmoothGrad) live in policy/saliency.py,
because the live node draws ~/attention with them and a node may not import this layer."""
