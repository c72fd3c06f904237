"""Forms for the client portal's own pages (F4): the profile and the password change."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from portal.services.passwords import MIN_LENGTH


class ProfileForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Enter your name."), Length(max=200)])
    phone = StringField("Phone", validators=[Optional(), Length(max=50)])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password",
                                     validators=[DataRequired(message="Enter your current password."),
                                                 Length(max=256)])
    password = PasswordField(
        "New password", description=f"At least {MIN_LENGTH} characters.",
        validators=[DataRequired(message="Enter a new password."), Length(max=256)],
    )
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(message="Repeat the new password."),
                                        EqualTo("password", message="The passwords don't match.")])
