"""The content pipeline's agents: the strategist plans, creation writes, image generation draws the charts,
publishing sends, repurposing turns the best posts into new plans, exclusive content writes the members' weekly
report. Importing this package registers them."""

from apps.content.agents import creation, exclusive, images, publishing, repurposing, strategist

__all__ = ["creation", "exclusive", "images", "publishing", "repurposing", "strategist"]
